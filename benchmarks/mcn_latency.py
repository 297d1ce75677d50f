"""The command line of :mod:`refseg_lib.timing.mcn_latency`; ``--help`` lists its options."""

from refseg_lib.timing.mcn_latency import main

if __name__ == "__main__":
    main()
