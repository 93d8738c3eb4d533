import sys

# Recorded before this module imports anything: a forked start finds the SDK already imported.
SDK_PRELOADED = "dify_plugin" in sys.modules

from dify_plugin import DifyPluginEnv, Plugin  # noqa: E402

plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=120))

if __name__ == "__main__":
    plugin.run()
