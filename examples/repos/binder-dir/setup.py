raise SystemExit("ignored: binder/ exists")
