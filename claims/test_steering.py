"""Steering (phase 2): does adding the anchor's decoder direction change what the model writes?
Phase 2 findings: they never gate the decision (GO) to start Phase 2.

Scores are whole words: P(the word's tokens) x P(the next token ends the word), summed over the
lexicon's spellings, at the same fluency cost for every method (KL at the reply's first token,
matched on discovery prompts).
Kinds, each decided on a BCa interval of a per-prompt mean over the confirmation prompts:
- beats_random: the anchor raises concept words, and beats 99 random directions and 99 random
  decoder rows by exact rank (p <= 0.05);
- specificity: both parts of the statement, under the anchor France words move more than Germany
  words, and more so than under the Germany direction (2 x 2 difference in differences); not
  evaluated when the Germany direction does not raise Germany words (no working contrast);
- multi_vs_single: anchor + discovery-half sub-features beats the anchor alone, ranks above the
  anchor mixed with random fine rows, and beats the anchor mixed with aligned rows that are not
  sub-features (KL matched);
- concept_rate: share of concept words in sampled continuations, steered vs unsteered;
- versus_baseline: the anchor against DiffMean or prompting.
Either answer is a finding. How: harness/steering/study.py; verdict rules: harness/engine/claims_engine.py.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("steering")
def test_steering(claim, analysis, steering_study, record_claim):
    record = record_claim(evaluate(claim, analysis, steering=steering_study))
    assert_held(record)
