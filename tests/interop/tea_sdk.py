#!/usr/bin/env python3
"""Interop driver: the official MODERN ("Tea") Alibaba Cloud Python SDK
(alibabacloud-gpdb20160503 5.12.0 on alibabacloud-tea-openapi 0.4.6 / darabonba-core 1.0.9)
talking to gpdb through idemproxy.

The SDK is used unmodified. Its HTTP layer is `requests` (darabonba/core.py do_action):
  * --protocol http + a proxy: absolute-form `POST http://<endpoint>/?... HTTP/1.1`.
  * --protocol https + a proxy: `CONNECT <endpoint>:443`, then TLS; the proxy must intercept
    with a CA the client trusts (--ca).
  * --proxy-mode none: direct to --endpoint (gateway mode: endpoint = the proxy's host:port,
    which V3 then signs as the `host` header).
Signature: V3 ACS3-HMAC-SHA256 by default; --signature v2 selects
Config.signature_algorithm='v2' (RPC HMAC-SHA1, SignatureVersion=1.0).

--ca: the SDK passes Config.ca (a file PATH; not PEM text) as requests' `verify=`, so it is
honoured both direct and through a CONNECT proxy. SSL_CERT_FILE is honoured only on the direct
path (the SDK's own SSLContext); through a proxy urllib3 loads just certifi and ignores it.
REQUESTS_CA_BUNDLE is never read (the SDK calls Session.send, not Session.request).

Prints exactly one JSON object on stdout:
  {"creates": [{"ok": true, "DBInstanceId": ..., "RequestId": ..., "response": {...}}
               | {"ok": false, "error": {"type", "code", "message", "http_status", "request_id"}}],
   "describe": {"ok": true, "response": {...}} | {"ok": false, "error": {...}} | null}
Errors raised as UnretryableException (network/TLS/unparsable body) also carry
"cause" (the inner exception's type).
Exit status: 0 whenever the JSON was printed (even if every call failed),
2 on a usage error (argparse).

Install: pip install -r tests/interop/requirements.txt
"""

import argparse
import json
import os
import sys

PROXY_ENV_VARS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
    "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Drive the modern (Tea) Alibaba Cloud Python SDK for gpdb through idemproxy.")
    p.add_argument("--ak", default="testid", help="AccessKeyId (default: testid)")
    p.add_argument("--secret", default="testsecret", help="AccessKeySecret (default: testsecret)")
    p.add_argument("--region", default="cn-hangzhou", help="Config.region_id (default: cn-hangzhou)")
    p.add_argument("--endpoint", default="gpdb.aliyuncs.com",
                   help="Config.endpoint host[:port] (default: gpdb.aliyuncs.com); "
                        "empty string = let the SDK resolve it from the region")
    p.add_argument("--protocol", choices=("https", "http"), default="https",
                   help="Config.protocol (default: https, the SDK default)")
    p.add_argument("--signature", choices=("v3", "v2"), default="v3",
                   help="v3: ACS3-HMAC-SHA256 (SDK default); "
                        "v2: Config.signature_algorithm='v2' (RPC HMAC-SHA1)")
    p.add_argument("--proxy-mode", choices=("env", "config", "none"), required=True,
                   help="env: HTTP(S)_PROXY/http(s)_proxy in os.environ; "
                        "config: Config(http_proxy=URL, https_proxy=URL) with no proxy env vars; "
                        "none: no proxy at all (gateway mode: --endpoint is the proxy)")
    p.add_argument("--proxy", help="forward proxy URL, e.g. http://127.0.0.1:8080 "
                                   "(required unless --proxy-mode none)")
    p.add_argument("--ca", help="PEM CA bundle file the SDK must trust for https "
                                "(e.g. idemproxy's local MITM CA)")
    p.add_argument("--ca-via", choices=("config", "runtime", "env"), default="config",
                   help="how --ca is given: Config.ca (default), RuntimeOptions.ca, or "
                        "SSL_CERT_FILE (direct connections only; ignored through a proxy)")
    p.add_argument("--creates", type=int, default=3, help="number of CreateDBInstance calls (default 3)")
    p.add_argument("--describe", action="store_true", help="also send one DescribeDBInstances")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="SDK connect and read timeout in seconds (default 30)")
    args = p.parse_args(argv)
    if args.creates < 0:
        p.error("--creates must be >= 0")
    if args.timeout <= 0:
        p.error("--timeout must be > 0")
    if args.proxy_mode == "none":
        if args.proxy:
            p.error("--proxy makes no sense with --proxy-mode none")
    else:
        if not args.proxy:
            p.error(f"--proxy is required with --proxy-mode {args.proxy_mode}")
        if not (args.proxy.startswith("http://") or args.proxy.startswith("https://")):
            p.error("--proxy must be an http:// or https:// URL")
    if args.ca is not None and not os.path.isfile(args.ca):
        p.error(f"--ca file not found: {args.ca}")
    return args


def configure_env(args):
    # darabonba reads the proxy env vars per request (core.py do_action); set them before use.
    for name in PROXY_ENV_VARS:
        os.environ.pop(name, None)
    if args.proxy_mode == "env":
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            os.environ[name] = args.proxy
    if args.ca and args.ca_via == "env":
        os.environ["SSL_CERT_FILE"] = os.path.abspath(args.ca)


def error_of(exc):
    # Imported lazily so that a usage error never depends on the SDK being installed.
    from darabonba.exceptions import ResponseException
    from Tea.exceptions import UnretryableException
    err = {"type": type(exc).__name__, "code": None, "message": str(exc),
           "http_status": None, "request_id": None}
    if isinstance(exc, ResponseException):
        # ClientException (4xx), ServerException (5xx), ThrottlingException (x-acs-retry-after)
        req_id = getattr(exc, "request_id", None)
        err.update(code=getattr(exc, "code", None), message=getattr(exc, "message", str(exc)),
                   http_status=getattr(exc, "status_code", None),
                   request_id=None if req_id in (None, "None") else req_id)
    elif isinstance(exc, UnretryableException):
        inner = getattr(exc, "inner_exception", None)
        err["cause"] = type(inner).__name__ if inner is not None else None
        err["message"] = str(getattr(inner, "message", None) or inner or exc)
    return err


def call(fn, request, runtime):
    try:
        resp = fn(request, runtime)
        body = resp.to_map().get("body")
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the JSON
        return {"ok": False, "error": error_of(exc)}
    return {"ok": True, "response": body}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_env(args)

    from alibabacloud_gpdb20160503 import models as gpdb_models
    from alibabacloud_gpdb20160503.client import Client
    from alibabacloud_tea_openapi.utils_models import Config
    from darabonba.runtime import RuntimeOptions

    timeout_ms = max(1, int(round(args.timeout * 1000)))
    config = Config(access_key_id=args.ak, access_key_secret=args.secret,
                    region_id=args.region, protocol=args.protocol,
                    read_timeout=timeout_ms, connect_timeout=timeout_ms)
    if args.endpoint:
        config.endpoint = args.endpoint
    if args.signature == "v2":
        config.signature_algorithm = "v2"
    if args.proxy_mode == "config":
        config.http_proxy = args.proxy
        config.https_proxy = args.proxy
    if args.ca and args.ca_via == "config":
        config.ca = os.path.abspath(args.ca)
    client = Client(config)

    runtime = RuntimeOptions()
    if args.ca and args.ca_via == "runtime":
        runtime.ca = os.path.abspath(args.ca)

    creates = []
    for i in range(args.creates):
        req = gpdb_models.CreateDBInstanceRequest(  # deliberately no client_token
            engine="gpdb",
            engine_version="6.0",
            dbinstance_description=f"tea-{i} a b*c~d+e",
            dbinstance_class="gpdb.group.segsdx1",
            dbinstance_group_count="2",
            zone_id="cn-hangzhou-h",
            pay_type="Postpaid",
            instance_network_type="VPC",
            vpcid="vpc-interop",
            v_switch_id="vsw-interop",
            security_iplist="127.0.0.1",
            region_id=args.region,
        )
        res = call(client.create_dbinstance_with_options, req, runtime)
        if res["ok"]:
            body = res["response"]
            res = {"ok": True,
                   "DBInstanceId": body.get("DBInstanceId") if isinstance(body, dict) else None,
                   "RequestId": body.get("RequestId") if isinstance(body, dict) else None,
                   "response": body}
        creates.append(res)

    describe = None
    if args.describe:
        req = gpdb_models.DescribeDBInstancesRequest(region_id=args.region,
                                                     page_size=30, page_number=1)
        describe = call(client.describe_dbinstances_with_options, req, runtime)

    sys.stdout.write(json.dumps({"creates": creates, "describe": describe}, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
