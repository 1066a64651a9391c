"""The LSTM policies that sample architectures (Pham et al., 2018).

`base` holds what all controllers share (`Controller`, `Sample`); `build`
holds the macro and micro CNN controllers and `controller_for(space)`;
`rnn` the recurrent-cell controller.
"""
