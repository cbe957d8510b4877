"""What ``ddp_spawn`` needs of the module and the data: both pickle. Training on 2 processes under
``ddp``, ``ddp_spawn``, FSDP2 and two nodes, with each recipe's own callbacks, is tested through
``polyguide fit`` in ``test_distributed_fit.py``."""

import pickle

from framework.toy.data import MixtureData
from framework.training.module import GenerativeModule


def test_module_and_data_pickle_for_spawned_processes():
    dm = MixtureData(n_train=64, n_val=64)
    model = GenerativeModule(family="diffusion", shape=[1, 2],
                             conditions=[{"name": n, "labels": list(s.labels)} for n, s in dm.specs.items()],
                             backbone={"dim": 16, "depth": 1, "heads": 2})
    pickle.loads(pickle.dumps(model))
    pickle.loads(pickle.dumps(dm))
