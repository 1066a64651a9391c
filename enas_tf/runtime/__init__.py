"""Process-level plumbing shared by searches, training and tools: checkpoints
(`checkpoints`), run directories (`rundir`), tf.distribute strategies
(`distribute`), mixed precision (`precision`), non-finite loss handling
(`nonfinite`) and the tools' error handling and flag checks (`cli`).
"""
