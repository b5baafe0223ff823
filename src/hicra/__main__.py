from hicra.cli import main

raise SystemExit(main())
