"""One quick look at whether the servers the weights come from answer (standard library only:
install.py loads this file by its path, before the project is installed).

Offline, that is all there is to know: no retries, no pages of download warnings.
"""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request


def hub_url() -> str:
    """Where CLIP's weights come from: the Hugging Face hub ($HF_ENDPOINT when set)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


#: Where the weights come from: CLIP through the Hugging Face hub, the others from GitHub.
def weights_servers() -> tuple[str, ...]:
    return (hub_url(), "https://github.com")


def unreachable(urls: tuple[str, ...] | list[str], timeout: float = 5.0) -> str | None:
    """One request to each of `urls`: None when all answer, else which one does not and why,
    e.g. "https://huggingface.co ([Errno -3] Temporary failure in name resolution)"."""
    for url in urls:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            continue  # it answered
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLError):
                continue  # it answered; certificates are the downloader's business
            return f"{url} ({error.reason})"
        except (OSError, ValueError) as error:
            return f"{url} ({error})"
    return None
