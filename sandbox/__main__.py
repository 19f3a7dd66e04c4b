"""`python -m sandbox [--port P] [--seed FILE] [--state-dir DIR]`: serve the emulators over HTTPS.

Writes DIR/ca.pem and DIR/settings.env (every app setting that points the app at the sandbox)
once the port is bound, so a shell or a test can wait for the file and load it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from sandbox.app import build_app
from sandbox.startup import StartupError, bind_port, hold_lock
from sandbox.tls import write_certificates
from sandbox.world import World, read_seed


def settings_lines(world: World, ca_path: Path) -> list[str]:
    app = next(iter(world.apps.values()))
    return [
        f"GRAPH_BASE_URL={world.base_url}/v1.0",
        f"DATAVERSE_URL={world.base_url}",
        f"ENTRA_AUTHORITY_HOST={world.base_url}",
        f"ENTRA_TENANT_ID={world.tenant_id}",
        f"ENTRA_CLIENT_ID={app.client_id}",
        f"ENTRA_CLIENT_SECRET={app.client_secret}",
        f"API_AUDIENCE={world.api_audience}",
        f"API_SCOPE={world.api_scope}",
        f"ORGANIZATION_DOMAINS={','.join(world.org_domains)}",
        f"SSL_CERT_FILE={ca_path}",
        f"REQUESTS_CA_BUNDLE={ca_path}",
        f"SANDBOX_URL={world.base_url}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--seed", type=Path, default=None, help="seed JSON (default: demo seed)")
    parser.add_argument("--state-dir", type=Path, default=Path(".sandbox"))
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s sandbox %(message)s")
    state_dir: Path = args.state_dir.resolve()
    try:
        lock = hold_lock(state_dir / "sandbox.lock", "a sandbox")
        sock = bind_port(args.port)
    except StartupError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    port = sock.getsockname()[1]

    ca_path, cert_path, key_path = write_certificates(state_dir)
    world = World(f"https://127.0.0.1:{port}")
    world.load_seed(read_seed(args.seed))
    app = build_app(world)

    settings_path = state_dir / "settings.env"
    partial = settings_path.with_suffix(".tmp")
    partial.write_text("\n".join(settings_lines(world, ca_path)) + "\n", encoding="utf-8")
    os.replace(partial, settings_path)
    print(f"sandbox listening on {world.base_url} (settings: {settings_path})", flush=True)

    config = uvicorn.Config(
        app, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path),
        log_level=args.log_level, access_log=False, lifespan="off", timeout_keep_alive=30,
    )
    uvicorn.Server(config).run(sockets=[sock])
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
