from hermes_web.cli import main

raise SystemExit(main())
