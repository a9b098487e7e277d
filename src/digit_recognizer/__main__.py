from digit_recognizer.cli import main

raise SystemExit(main())
