"""`python -m copydesk`: the same command line as `copydesk`."""

from copydesk.cli import main

main()
