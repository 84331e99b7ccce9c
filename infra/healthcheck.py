"""Exit 0 if every URL given answers HTTP 200 within 5 s, else 1: the compose healthchecks (the image
has Python but no curl). Usage: python infra/healthcheck.py http://127.0.0.1:8000/healthz"""
import sys
import urllib.request


def main(urls: list[str]) -> int:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status != 200:
                    return 1
        except OSError as exc:  # refused, timed out, or an HTTP error status
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    return 0 if urls else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
