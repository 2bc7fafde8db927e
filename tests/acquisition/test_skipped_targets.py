"""A target marked ``skip`` in the targets file (PACEtomo's way of leaving one out): the run goes
on without it, it gets no image and no defocus level, and the others keep theirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run

TARGETS = [
    {"SSX": 0.0, "SSY": 0.0},
    {"SSX": 1.2, "SSY": 0.8, "skip": 1},
    {"SSX": -1.0, "SSY": 1.4},
]


@pytest.mark.parametrize("strategy", ["pace", "fused", "none"])
def test_a_skipped_target_is_left_out_and_the_others_keep_their_defocus(
    tmp_path: Path, strategy: str
) -> None:
    config = write_config(
        tmp_path,
        strategy=strategy,
        seed=3,
        targets=TARGETS,
        settings={"minTilt": -3, "maxTilt": 3, "minDefocus": -3, "maxDefocus": -4},
        twin={"camera": {"render": False}},
    )
    engine, _ = start_run(load_acquire_config(config))
    assert engine.run().status == "finished"
    run_dir = tmp_path / "run"
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    assert {int(c["target"]) for c in journal.committed} == {1, 3}
    assert not (run_dir / "L1_ts_002.mrc").exists()
    truth = engine.scope.ground_truth
    # stepDefocus 0.5 from maxDefocus: target 1 at -4, target 3 (the next one not skipped) -3.5
    for target, level in ((1, -4.0), (3, -3.5)):
        records = [c for c in journal.committed if int(c["target"]) == target]
        assert len(records) == 3
        true_defocus = [truth.exposure(int(c["exposure_id"])).defocus_um for c in records]
        np.testing.assert_allclose(true_defocus, level, atol=0.4)
    quality = assess_run_dir(run_dir)
    assert [t.target for t in quality.targets] == [1, 3]
    assert max(t.defocus_rms_um for t in quality.targets) < 0.3  # judged against -4 and -3.5
