"""edge-agent: the store-side daemon (config, ledger, retail, visitors, API, CLI)."""

__version__ = "0.1.0"
AGENT_NAME = f"edge-agent/{__version__}"
