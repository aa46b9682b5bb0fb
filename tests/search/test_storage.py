import pytest

from bitnas.errors import BitnasError
from bitnas.search.storage import _scrub, mask_url, open_storage


@pytest.mark.parametrize("url,masked,secret", [
    ("postgresql://user:s3cret@host:5432/db", "postgresql://user:***@host:5432/db", "s3cret"),
    ("postgresql://user:pa/ss@localhost:1/db", "postgresql://user:***@localhost:1/db", "pa/ss"),
    ("postgresql://user:p@ssw@host/db", "postgresql://user:***@host/db", "p@ssw"),
    ("postgresql://host/db?password=topsecret&x=1", "postgresql://host/db?password=***&x=1",
     "topsecret"),
    ("mysql+pymysql://u:pw1234@h:3306/d", "mysql+pymysql://u:***@h:3306/d", "pw1234"),
])
def test_passwords_are_masked(url, masked, secret):
    assert mask_url(url) == masked
    assert secret not in _scrub(f"could not connect to {url} with {secret}", url)


@pytest.mark.parametrize("url", ["sqlite:////tmp/a@b:c.db", "postgresql://alice@h/db",
                                 "journal:///x/y.log"])
def test_urls_without_passwords_are_unchanged(url):
    assert mask_url(url) == url


def test_read_only_open_never_creates_a_file(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'nope.db'}", f"journal://{tmp_path / 'nope.log'}"):
        with pytest.raises(BitnasError, match="does not exist"):
            open_storage(url, must_exist=True)
    assert not list(tmp_path.iterdir())
    (tmp_path / "zero.db").touch()
    with pytest.raises(BitnasError, match="is empty"):
        open_storage(f"sqlite:///{tmp_path / 'zero.db'}", must_exist=True)
    assert (tmp_path / "zero.db").stat().st_size == 0
