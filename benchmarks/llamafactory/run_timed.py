"""Run LLaMA-Factory's SFT from a YAML config (in LLaMA-Factory's own virtualenv) and print the wall-clock
and process CPU time of ``trainer.train()`` as one ``LFCLOCK {json}`` line. See write_data.py."""

import json
import sys
import time

import yaml
from llamafactory.train.tuner import run_exp
from transformers import TrainerCallback


class Clock(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        print("LFCLOCK " + json.dumps({"train_wall_s": time.perf_counter() - self.wall,
                                       "train_cpu_s": time.process_time() - self.cpu, "steps": state.global_step}),
              flush=True)


run_exp(yaml.safe_load(open(sys.argv[1], encoding="utf-8")), callbacks=[Clock()])
