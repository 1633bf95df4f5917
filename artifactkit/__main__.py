from cli.main import main  # the one allowed upward import: `python -m artifactkit` is the CLI

main()
