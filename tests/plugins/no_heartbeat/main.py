import sys
import time

# Never starts the SDK's loop: no heartbeat ever reaches the daemon.
print("starting but never ready", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
