"""The session archive's tables (SQLAlchemy 2 declarative models).

One row per session, area (grid square / lamella), target, tilt series and exposure, as Leginon
keeps its ``TiltSeriesData``, ``AcquisitionImageData`` and ``TomographyPredictionData``; plus the
session's housekeeping events (dewar refills, FEG flashes, ZLP refinements), its processing jobs,
a log of every event recorded (so a recorder that retries never writes one twice), and, for runs
on the digital twin, the ground truth of each exposure in a table of its own.

Lengths are µm, defocus µm (negative = underfocus), dose e⁻/Å², times s, as everywhere in
tomopilot. ``time_s`` columns are microscope-clock seconds (simulated seconds on the twin);
``recorded_utc`` columns are wall-clock ISO strings.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every archive table."""


class SessionRow(Base):
    """A microscope session: one run folder (tomopilot's, or SerialEM/PACEtomo's)."""

    __tablename__ = "session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    run_dir: Mapped[str] = mapped_column(String(1000), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # "live", "tomopilot", "serialem"
    strategy: Mapped[str] = mapped_column(String(50), default="")
    status: Mapped[str] = mapped_column(String(20), default="running")
    n_targets: Mapped[int] = mapped_column(Integer, default=0)
    n_tilts_planned: Mapped[int] = mapped_column(Integer, default=0)
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    microscope_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_lost: Mapped[int] = mapped_column(Integer, default=0)
    is_twin: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_utc: Mapped[str] = mapped_column(String(40), default="")

    areas: Mapped[list[AreaRow]] = relationship(back_populates="session")
    tilt_series: Mapped[list[TiltSeriesRow]] = relationship(back_populates="session")


class AreaRow(Base):
    """A grid square or lamella whose targets are acquired together."""

    __tablename__ = "area"
    __table_args__ = (UniqueConstraint("session_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    stage_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    pretilt_deg: Mapped[float | None] = mapped_column(Float, nullable=True)
    rotation_deg: Mapped[float | None] = mapped_column(Float, nullable=True)
    beam_diameter_um: Mapped[float | None] = mapped_column(Float, nullable=True)

    session: Mapped[SessionRow] = relationship(back_populates="areas")
    targets: Mapped[list[TargetRow]] = relationship(back_populates="area")


class TargetRow(Base):
    """A target of an area: its specimen shift from target 1 and its state."""

    __tablename__ = "target"
    __table_args__ = (UniqueConstraint("area_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("area.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    ss_x_um: Mapped[float] = mapped_column(Float, default=0.0)
    ss_y_um: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    detail: Mapped[str] = mapped_column(Text, default="")

    area: Mapped[AreaRow] = relationship(back_populates="targets")


class TiltSeriesRow(Base):
    """One tilt series: a stack and its mdoc."""

    __tablename__ = "tilt_series"
    __table_args__ = (UniqueConstraint("session_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("target.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    stack_file: Mapped[str] = mapped_column(String(500))
    mdoc_file: Mapped[str] = mapped_column(String(500))
    n_planned: Mapped[int] = mapped_column(Integer, default=0)
    pixel_size_a: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="acquiring")

    session: Mapped[SessionRow] = relationship(back_populates="tilt_series")
    exposures: Mapped[list[ExposureRow]] = relationship(
        back_populates="tilt_series", order_by="ExposureRow.ordinal"
    )


class ExposureRow(Base):
    """One Record of a tilt series, with what was predicted, applied and measured.

    ``predicted_*`` is where the strategy expected the target (the image shift it applied, as
    Leginon's "prediction"); ``measured_*`` is where the Record showed it (applied shift plus the
    alignment found in the image, Leginon's "position"); ``tracking_error_*`` is their
    difference. ``section`` counts from 0 in ``file``; ``ordinal`` is the acquisition order.
    """

    __tablename__ = "exposure"
    __table_args__ = (UniqueConstraint("tilt_series_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tilt_series_id: Mapped[int] = mapped_column(ForeignKey("tilt_series.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    section: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(500))
    tilt_deg: Mapped[float] = mapped_column(Float)
    branch: Mapped[str] = mapped_column(String(20), default="")
    image_shift_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_shift_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_z_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    target_defocus_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_defocus_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_defocus_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted_z_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    tracking_error_x_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    tracking_error_y_um: Mapped[float | None] = mapped_column(Float, nullable=True)
    dose_e_a2: Mapped[float | None] = mapped_column(Float, nullable=True)
    prior_dose_e_a2: Mapped[float | None] = mapped_column(Float, nullable=True)
    mean_counts: Mapped[float | None] = mapped_column(Float, nullable=True)
    exposure_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    datetime: Mapped[str] = mapped_column(String(40), default="")
    backend_exposure_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    tilt_series: Mapped[TiltSeriesRow] = relationship(back_populates="exposures")
    truth: Mapped[GroundTruthRow | None] = relationship(back_populates="exposure")


class GroundTruthRow(Base):
    """What the digital twin knows really happened at one exposure (never seen by strategies)."""

    __tablename__ = "ground_truth"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exposure_id: Mapped[int] = mapped_column(
        ForeignKey("exposure.id", ondelete="CASCADE"), unique=True
    )
    true_error_x_nm: Mapped[float] = mapped_column(Float)
    true_error_y_nm: Mapped[float] = mapped_column(Float)
    true_defocus_um: Mapped[float] = mapped_column(Float)
    true_tilt_deg: Mapped[float] = mapped_column(Float)

    exposure: Mapped[ExposureRow] = relationship(back_populates="truth")


class HousekeepingRow(Base):
    """A housekeeping duty (dewar refill, FEG flash, ZLP refinement, autofocus...)."""

    __tablename__ = "housekeeping_event"
    __table_args__ = (UniqueConstraint("session_id", "ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    time_s: Mapped[float] = mapped_column(Float)
    task: Mapped[str] = mapped_column(String(100))
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    detail: Mapped[str] = mapped_column(Text, default="")


class ProcessingJobRow(Base):
    """A preprocessing job run on a session's data (motion correction, CTF...)."""

    __tablename__ = "processing_job"
    __table_args__ = (UniqueConstraint("session_id", "job_dir"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    tilt_series_id: Mapped[int | None] = mapped_column(
        ForeignKey("tilt_series.id", ondelete="SET NULL"), nullable=True
    )
    job_type: Mapped[str] = mapped_column(String(50))
    job_dir: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    detail: Mapped[str] = mapped_column(Text, default="")
    recorded_utc: Mapped[str] = mapped_column(String(40), default="")


class EventLogRow(Base):
    """Every event a recorder wrote, by its sequence number (retries never duplicate one)."""

    __tablename__ = "event_log"
    __table_args__ = (UniqueConstraint("session_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("session.id", ondelete="CASCADE"))
    seq: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(50))
    time_s: Mapped[float] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text)


__all__ = [
    "AreaRow",
    "Base",
    "EventLogRow",
    "ExposureRow",
    "GroundTruthRow",
    "HousekeepingRow",
    "ProcessingJobRow",
    "SessionRow",
    "TargetRow",
    "TiltSeriesRow",
]
