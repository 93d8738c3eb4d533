"""``python -m dify_plugin_client``: same as the ``dify-plugin-client`` console script."""

import sys

from .cli import main

sys.exit(main())
