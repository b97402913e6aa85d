"""The `fpnlab` command line, one module per command: each parses its options and calls plain functions.

    make_data   fpnlab.data.generate.make_dataset         download   fpnlab.data.pennfudan
    train       fpnlab.engine.loop.train                         eval       fpnlab.engine.evaluate.evaluate_checkpoint
    detect      fpnlab.engine.inference                              ablate     fpnlab.ablation.runner.run_ablation

Every module defines `add_arguments(parser)` and `run(args) -> exit code`; `common` holds the options
several commands share. fpnlab.cli dispatches, and turns any FpnlabError into one line and exit code 2.
"""
