"""What starts or follows runs besides the Launchpad: the inbox sensor, the nightly sweep
schedule and the failure sensor, one module each."""
