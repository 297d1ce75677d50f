"""The command line of :mod:`refseg_lib.timing.sru_vs_lstm`; ``--help`` lists its options."""

from refseg_lib.timing.sru_vs_lstm import main

if __name__ == "__main__":
    main()
