"""Tests of enas_tf.errors: `UserError` and its subclasses."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from enas_tf import errors, spaces
from enas_tf.data.images import load_images
from enas_tf.errors import ArcError, DataError, UserError

REPO = Path(__file__).resolve().parents[1]


def test_every_error_of_the_module_is_a_user_error():
    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and cls.__module__ == errors.__name__
    }
    assert defined == {"UserError": UserError, "ArcError": ArcError, "DataError": DataError}
    assert all(issubclass(cls, UserError) for cls in defined.values())
    # UserError itself is no built-in error category; its subclasses are.
    assert UserError.__bases__ == (Exception,)
    assert not issubclass(UserError, (ValueError, OSError))


def test_subclasses_are_also_the_builtin_errors_callers_expect():
    assert issubclass(ArcError, ValueError) and not issubclass(ArcError, OSError)
    assert issubclass(DataError, OSError) and not issubclass(DataError, ValueError)
    assert not issubclass(ArcError, DataError) and not issubclass(DataError, ArcError)
    # A bad architecture is a ValueError to generic code, a UserError to the tools.
    micro = spaces.MicroSpace(num_nodes=1)
    for caught in (ValueError, UserError, ArcError):
        with pytest.raises(caught, match="expected 8 integers"):
            micro.validate([0, 0, 0])
    # A missing dataset is an OSError to generic code.
    for caught in (OSError, UserError, DataError):
        with pytest.raises(caught, match="Unknown image dataset"):
            load_images("no_such_dataset")


def test_messages_pass_through_unchanged():
    message = "The file x is truncated; download it again."
    for cls in (UserError, ArcError, DataError):
        error = cls(message)
        assert str(error) == message and error.args == (message,)
    # One argument: OSError's errno, strerror and filename stay unset.
    error = DataError(message)
    assert error.errno is None and error.strerror is None and error.filename is None


def test_importing_the_errors_is_light():
    # The tools import the errors before their checks, which must stay fast.
    code = (
        "import sys, enas_tf.errors; "
        "heavy = {'numpy', 'tensorflow', 'keras'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
