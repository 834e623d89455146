"""`python -m harness` is the `recipe-harness` command."""

from harness.cli import main

raise SystemExit(main())
