"""Best trial of sweep 'halving' (val_accuracy 94.40%, test 93.21%): learning_rate=0.2, weight_decay=0.0005, label_smoothing=0.

Written by experiments/sweep.py into workdirs/sweeps/grid16. Train it alone with::

    .venv/bin/python experiments/train.py --config=workdirs/sweeps/grid16/best_config.py --workdir=workdirs/best
"""

import ml_collections


def get_config(arg=None):
    del arg  # a ready config: every value is fixed
    config = ml_collections.ConfigDict({ 'augment': {'crop_padding': 0, 'flip': False, 'max_translate': 0},
      'batch_size': 128,
      'data_parallel': 0,
      'dataset': 'fashion_mnist',
      'early_stopping_patience': 0,
      'ema_decay': 0.0,
      'eval_batch_size': 1000,
      'eval_test_every_epoch': True,
      'figures': True,
      'grad_health_every_steps': 0,
      'label_smoothing': 0.0,
      'learning_rate': 0.2,
      'log_every_steps': 50,
      'loop': 'auto',
      'model': { 'batch_norm': True,
                 'convs_per_stage': 2,
                 'dropout': 0.0,
                 'fc_widths': (256,),
                 'name': 'PatternCNN',
                 'pool': 'max',
                 'widths': (32, 64)},
      'momentum': 0.9,
      'nesterov': True,
      'num_epochs': 3,
      'onecycle_div_factor': 10.0,
      'onecycle_final_div_factor': 100.0,
      'onecycle_pct_start': 0.25,
      'optimizer': 'sgd',
      'progress': False,
      'schedule': 'onecycle',
      'seed': 0,
      'smoke': False,
      'steps_per_call': 0,
      'tensorboard': False,
      'test_subset': 0,
      'train_subset': 0,
      'tta_flip': False,
      'validation_size': 5000,
      'verbose': True,
      'warmup_epochs': 0.0,
      'weight_decay': 0.0005})
    config.lock()
    return config
