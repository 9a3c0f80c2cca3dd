from ilrma_cli.cli import main

main()
