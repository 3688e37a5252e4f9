"""copydesk: multi-stage content generation under a hard token budget, gated by QC.

The library never imports Prefect; `flows/` wires it into Prefect flows.
"""

__version__ = "0.1.0"
