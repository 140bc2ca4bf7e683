"""Training and evaluation: procedural scenes, datasets, the paper's prompt
simulation and losses, the training loop with resumable checkpoints, the
interactive point evaluation, and the ``sam-train`` / ``sam-eval`` commands.
SAM, MobileSAM and SAM 2.1 networks train through one loop, each through its
family's adapter (``backend/train/adapters.py``).

Modules are imported where used (they need torch); see ``backend/train/cli.py``
for the commands and ``backend/train/demo.py`` for the shipped demo model.
"""
