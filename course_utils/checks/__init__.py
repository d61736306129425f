"""Input checks that fail early with a message a learner can act on (what was wrong, what was expected, what to do).

- values: generic checks of one argument (a positive whole number, one of some choices, a multiple of 8);
- pipeline_inputs: lesson 03's checks of a whole pipeline call (prompt, strength x steps, size, mask, guidance)."""
