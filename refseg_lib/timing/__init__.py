"""Timings the notebooks run (the scripts in ``benchmarks/`` call the same functions).

- :mod:`refseg_lib.timing.sru_vs_lstm`: one training step of our SRU against ``nn.LSTM``
  (DMN sec. 5.3); notebook 01.
- :mod:`refseg_lib.timing.mcn_latency`: inference latency of MCN against its single-task models
  (MCN Table 4); notebook 06b.
"""
