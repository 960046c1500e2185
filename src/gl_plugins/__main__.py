from gl_plugins.cli import main

raise SystemExit(main())
