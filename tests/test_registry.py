import pytest

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.registry import ALL, Registry, load_all

load_all()


@pytest.mark.parametrize("kind", list(ALL))
def test_every_registry_has_entries_with_descriptions(kind):
    reg = ALL[kind]
    assert reg.names(), f"no {kind} registered"
    for name, desc in reg.describe().items():
        assert desc.strip(), f"{kind} {name} has no one-line description"


def test_unknown_name_lists_choices_and_suggests():
    reg = ALL["spaces"]
    with pytest.raises(BitnasError) as e:
        reg.check("cnm", "space.name")
    msg = str(e.value)
    assert "space.name = 'cnm'" in msg and "cnn" in msg and "did you mean 'cnn'" in msg


def test_double_registration_is_a_bug():
    reg: Registry = Registry("thing", "bitnas.things")
    reg.register("a")(lambda: 1)
    with pytest.raises(BitnasError, match="registered twice"):
        reg.register("a")(lambda: 2)


def test_list_prints_every_entry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, reg in ALL.items():
        assert f"{kind}:" in out
        for name in reg.names():
            assert name in out
