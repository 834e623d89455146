"""`python -m harness` is the `recipe-harness` command."""

from .cli import main

raise SystemExit(main())
