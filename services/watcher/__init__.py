"""The watcher: observes task attempts on the execution backend and reports them."""
