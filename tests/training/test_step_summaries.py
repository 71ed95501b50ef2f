"""StepSummaries: every N steps, each loss term's mean over the window (also across an
epoch's end, non-finite steps left out), the skipped steps, the learning rate and images per
second, at the run's step."""

import os

import numpy as np
import pytest

from oanet_tf.training.step_summaries import STEPS_SUBDIR, StepSummaries
from tests.training.scripted_model import TERM, TOTAL_FACTOR, scripted_data, scripted_model
from tests.training.test_callbacks import read_events

EPOCHS, STEPS, EVERY, DONE, BATCH = 2, 5, 3, 101, 1
# Steps count on from the 101 restored: points at run steps 102, 105, 108, 111, closing the
# windows of this run's steps 1, 2-4 (step 2 not finite), 5-7 (across the epoch's end), 8-10.
VALUES = [1.0, np.nan, 4.0, 2.0, 6.0, 10.0, 3.0, 5.0, 7.0, 9.0]


def test_window_means_at_the_run_step(tmp_path):
    model = scripted_model()
    callback = StepSummaries(str(tmp_path), EVERY, BATCH, steps_done=DONE)
    model.fit(scripted_data(VALUES), epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0,
              callbacks=[callback])
    events = read_events(os.path.join(str(tmp_path), STEPS_SUBDIR))
    ends = [step - DONE for step in range(DONE + 1, DONE + len(VALUES) + 1) if step % EVERY == 0]
    windows = [VALUES[start:end] for start, end in zip([0] + ends, ends)]
    means = [float(np.nanmean(w)) for w in windows]
    assert [s for s, _ in events[f"{TERM}_loss"]] == [DONE + end for end in ends]
    np.testing.assert_allclose([v for _, v in events[f"{TERM}_loss"]], means, rtol=1e-6)
    np.testing.assert_allclose([v for _, v in events["loss"]], np.multiply(means, TOTAL_FACTOR),
                               rtol=1e-6)
    assert [v for _, v in events["nonfinite_steps"]] == [float(np.isnan(w).sum())
                                                         for w in windows]
    assert [v for _, v in events["learning_rate"]] == [0.25] * len(ends)
    rates = [v for _, v in events["images_per_second"]]
    assert len(rates) == len(ends) and all(np.isfinite(r) and r > 0 for r in rates)


def test_only_positive_intervals():
    with pytest.raises(ValueError, match="log_every_steps"):
        StepSummaries("logs", 0, BATCH)
