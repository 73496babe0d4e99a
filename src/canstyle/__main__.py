from canstyle.cli import main

raise SystemExit(main())
