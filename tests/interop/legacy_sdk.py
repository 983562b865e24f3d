#!/usr/bin/env python3
"""Interop driver: the official LEGACY Alibaba Cloud Python SDK
(aliyun-python-sdk-core 2.16.1 + aliyun-python-sdk-gpdb 1.1.7) talking to gpdb
through an HTTP forward proxy (idemproxy).

The SDK is used unmodified and on its default scheme (plain http), so through a
forward proxy it sends absolute-form `POST http://<endpoint>/?Action=...` requests
with every parameter (and the HMAC-SHA1 Signature) in the query and an empty body.

Prints exactly one JSON object on stdout:
  {"creates": [{"ok": true, "DBInstanceId": ..., "RequestId": ..., "response": {...}}
               | {"ok": false, "error": {"type", "code", "message", "http_status", "request_id"}}],
   "describe": {"ok": true, "response": {...}} | {"ok": false, "error": {...}} | null}
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
        description="Drive the legacy Alibaba Cloud Python SDK (gpdb) through a forward proxy.")
    p.add_argument("--proxy-mode", choices=("env", "arg"), required=True,
                   help="env: HTTP_PROXY/http_proxy in os.environ; "
                        "arg: AcsClient(proxy={'http': URL, 'https': URL}) with no proxy env vars")
    p.add_argument("--proxy", required=True, help="forward proxy URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--ak", default="testid", help="AccessKeyId (default: testid)")
    p.add_argument("--secret", default="testsecret", help="AccessKeySecret (default: testsecret)")
    p.add_argument("--region", default="cn-hangzhou", help="client region (default: cn-hangzhou)")
    p.add_argument("--endpoint", default="gpdb.aliyuncs.com",
                   help="endpoint host[:port] forced for every request (default: gpdb.aliyuncs.com); "
                        "empty string = let the SDK resolve it")
    p.add_argument("--endpoint-via", choices=("request", "client"), default="request",
                   help="how to force the endpoint: request.set_endpoint() (default) or "
                        "client.add_endpoint(region, 'gpdb', host)")
    p.add_argument("--creates", type=int, default=3, help="number of CreateDBInstance calls (default 3)")
    p.add_argument("--describe", action="store_true", help="also send one DescribeDBInstances")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="SDK read timeout in seconds (default 30)")
    args = p.parse_args(argv)
    if args.creates < 0:
        p.error("--creates must be >= 0")
    if args.timeout <= 0:
        p.error("--timeout must be > 0")
    if not (args.proxy.startswith("http://") or args.proxy.startswith("https://")):
        p.error("--proxy must be an http:// or https:// URL")
    return args


def configure_proxy_env(args):
    # Must happen before the client is created and before any request is sent:
    # the SDK reads the env lazily, per request (aliyunsdkcore/http/http_response.py).
    for name in PROXY_ENV_VARS:
        os.environ.pop(name, None)
    if args.proxy_mode == "env":
        os.environ["HTTP_PROXY"] = args.proxy
        os.environ["http_proxy"] = args.proxy


def error_of(exc):
    # Imported lazily so that a usage error never depends on the SDK being installed.
    from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
    err = {"type": type(exc).__name__, "code": None, "message": str(exc),
           "http_status": None, "request_id": None}
    if isinstance(exc, ServerException):
        err.update(code=exc.get_error_code(), message=exc.get_error_msg(),
                   http_status=exc.get_http_status(), request_id=exc.get_request_id())
    elif isinstance(exc, ClientException):
        err.update(code=exc.get_error_code(), message=exc.get_error_msg())
    return err


def call(client, request):
    try:
        raw = client.do_action_with_exception(request)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the JSON
        return {"ok": False, "error": error_of(exc)}
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    try:
        body = json.loads(text)
    except ValueError as exc:
        return {"ok": False, "error": {"type": "InvalidJSON", "code": None, "message": str(exc),
                                       "http_status": 200, "request_id": None, "body": text[:2000]}}
    return {"ok": True, "response": body}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_proxy_env(args)

    from aliyunsdkcore.client import AcsClient
    from aliyunsdkgpdb.request.v20160503.CreateDBInstanceRequest import CreateDBInstanceRequest
    from aliyunsdkgpdb.request.v20160503.DescribeDBInstancesRequest import DescribeDBInstancesRequest

    client_kwargs = dict(ak=args.ak, secret=args.secret, region_id=args.region,
                         timeout=args.timeout)
    if args.proxy_mode == "arg":
        client_kwargs["proxy"] = {"http": args.proxy, "https": args.proxy}
    client = AcsClient(**client_kwargs)
    if args.endpoint and args.endpoint_via == "client":
        client.add_endpoint(args.region, "gpdb", args.endpoint)

    def prepare(request):
        if args.endpoint and args.endpoint_via == "request":
            request.set_endpoint(args.endpoint)
        return request

    creates = []
    for i in range(args.creates):
        req = prepare(CreateDBInstanceRequest())  # deliberately no ClientToken
        req.set_Engine("gpdb")
        req.set_EngineVersion("6.0")
        req.set_DBInstanceDescription(f"interop-{i} a b*c~d+e")
        req.set_DBInstanceClass("gpdb.group.segsdx1")
        req.set_DBInstanceGroupCount("2")
        req.set_ZoneId("cn-hangzhou-h")
        req.set_PayType("Postpaid")
        req.set_InstanceNetworkType("VPC")
        req.set_VPCId("vpc-interop")
        req.set_VSwitchId("vsw-interop")
        req.set_SecurityIPList("127.0.0.1")
        res = call(client, req)
        if res["ok"]:
            body = res["response"]
            res = {"ok": True,
                   "DBInstanceId": body.get("DBInstanceId") if isinstance(body, dict) else None,
                   "RequestId": body.get("RequestId") if isinstance(body, dict) else None,
                   "response": body}
        creates.append(res)

    describe = None
    if args.describe:
        req = prepare(DescribeDBInstancesRequest())
        req.set_PageSize(30)
        req.set_PageNumber(1)
        describe = call(client, req)

    sys.stdout.write(json.dumps({"creates": creates, "describe": describe}, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
