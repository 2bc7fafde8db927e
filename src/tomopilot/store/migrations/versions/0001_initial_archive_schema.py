"""initial archive schema

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("run_dir", sa.String(length=1000), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("strategy", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("n_targets", sa.Integer(), nullable=False),
        sa.Column("n_tilts_planned", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=True),
        sa.Column("last_s", sa.Float(), nullable=True),
        sa.Column("microscope_minutes", sa.Float(), nullable=True),
        sa.Column("n_lost", sa.Integer(), nullable=False),
        sa.Column("is_twin", sa.Boolean(), nullable=False),
        sa.Column("recorded_utc", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_dir"),
    )
    op.create_table(
        "area",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("stage_x_um", sa.Float(), nullable=True),
        sa.Column("stage_y_um", sa.Float(), nullable=True),
        sa.Column("pretilt_deg", sa.Float(), nullable=True),
        sa.Column("rotation_deg", sa.Float(), nullable=True),
        sa.Column("beam_diameter_um", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "name"),
    )
    op.create_table(
        "event_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("time_s", sa.Float(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "seq"),
    )
    op.create_table(
        "housekeeping_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("time_s", sa.Float(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "ordinal"),
    )
    op.create_table(
        "target",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("ss_x_um", sa.Float(), nullable=False),
        sa.Column("ss_y_um", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["area_id"], ["area.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("area_id", "number"),
    )
    op.create_table(
        "tilt_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("stack_file", sa.String(length=500), nullable=False),
        sa.Column("mdoc_file", sa.String(length=500), nullable=False),
        sa.Column("n_planned", sa.Integer(), nullable=False),
        sa.Column("pixel_size_a", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["target.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "name"),
    )
    op.create_table(
        "exposure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tilt_series_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("section", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(length=500), nullable=False),
        sa.Column("tilt_deg", sa.Float(), nullable=False),
        sa.Column("branch", sa.String(length=20), nullable=False),
        sa.Column("image_shift_x_um", sa.Float(), nullable=True),
        sa.Column("image_shift_y_um", sa.Float(), nullable=True),
        sa.Column("stage_x_um", sa.Float(), nullable=True),
        sa.Column("stage_y_um", sa.Float(), nullable=True),
        sa.Column("stage_z_um", sa.Float(), nullable=True),
        sa.Column("target_defocus_um", sa.Float(), nullable=True),
        sa.Column("predicted_defocus_um", sa.Float(), nullable=True),
        sa.Column("measured_defocus_um", sa.Float(), nullable=True),
        sa.Column("predicted_x_um", sa.Float(), nullable=True),
        sa.Column("predicted_y_um", sa.Float(), nullable=True),
        sa.Column("predicted_z_um", sa.Float(), nullable=True),
        sa.Column("measured_x_um", sa.Float(), nullable=True),
        sa.Column("measured_y_um", sa.Float(), nullable=True),
        sa.Column("tracking_error_x_um", sa.Float(), nullable=True),
        sa.Column("tracking_error_y_um", sa.Float(), nullable=True),
        sa.Column("dose_e_a2", sa.Float(), nullable=True),
        sa.Column("prior_dose_e_a2", sa.Float(), nullable=True),
        sa.Column("mean_counts", sa.Float(), nullable=True),
        sa.Column("exposure_s", sa.Float(), nullable=True),
        sa.Column("time_s", sa.Float(), nullable=True),
        sa.Column("datetime", sa.String(length=40), nullable=False),
        sa.Column("backend_exposure_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["tilt_series_id"], ["tilt_series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tilt_series_id", "ordinal"),
    )
    op.create_table(
        "processing_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("tilt_series_id", sa.Integer(), nullable=True),
        sa.Column("job_type", sa.String(length=50), nullable=False),
        sa.Column("job_dir", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_utc", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["session.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tilt_series_id"], ["tilt_series.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "job_dir"),
    )
    op.create_table(
        "ground_truth",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exposure_id", sa.Integer(), nullable=False),
        sa.Column("true_error_x_nm", sa.Float(), nullable=False),
        sa.Column("true_error_y_nm", sa.Float(), nullable=False),
        sa.Column("true_defocus_um", sa.Float(), nullable=False),
        sa.Column("true_tilt_deg", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["exposure_id"], ["exposure.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("exposure_id"),
    )


def downgrade() -> None:
    op.drop_table("ground_truth")
    op.drop_table("processing_job")
    op.drop_table("exposure")
    op.drop_table("tilt_series")
    op.drop_table("target")
    op.drop_table("housekeeping_event")
    op.drop_table("event_log")
    op.drop_table("area")
    op.drop_table("session")
