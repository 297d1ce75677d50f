from refseg_lib.cli import main

if __name__ == "__main__":  # not when a spawned worker of plan.run_plan imports it
    main()
