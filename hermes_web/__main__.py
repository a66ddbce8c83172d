from hermes_web.cli.main import main

raise SystemExit(main())
