from refseg_lib.cli import main

main()
