"""moto's server, with what it does differently from AWS's documentation put right.

Each fix names the page it follows. Run as `python moto_fidelity.py <moto.server arguments>`.
"""
import base64
import functools
import hashlib
import inspect
import json
import sys
import threading
import time
import zlib
from xml.dom import minidom

from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.s3 import responses as s3_responses
from moto.s3.exceptions import InvalidPart, NoSuchUpload, S3ClientError
from moto.s3.models import S3Backend
from moto.s3.responses import S3Response

_upload_part = S3Backend.upload_part


def upload_part(self, bucket_name, multipart_id, part_id, value):
    # "UploadPart" (Amazon S3 API Reference): an upload that was completed or aborted answers
    # NoSuchUpload, HTTP 404 ("The specified multipart upload does not exist"); moto fails
    # with a KeyError, HTTP 500.
    if multipart_id not in self.get_bucket(bucket_name).multiparts:
        raise NoSuchUpload(upload_id=multipart_id)
    return _upload_part(self, bucket_name, multipart_id, part_id, value)


S3Backend.upload_part = upload_part


# "Checking object integrity" (Amazon S3 User Guide) and "CreateMultipartUpload"
# (x-amz-checksum-algorithm): a multipart upload created with a checksum algorithm keeps, for
# each part, the checksum of that algorithm, and only that one. moto's own helper
# (moto.s3.utils.compute_checksum) quietly computes CRC32 for CRC32C when the optional crc32c
# package is missing, and SHA-256 for CRC64NVME, so the checksums are computed here instead.
def _reflected_crc(polynomial, width):
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        table.append(crc)
    mask = (1 << width) - 1

    def crc(data):
        value = mask
        for byte in data:
            value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
        return (value ^ mask).to_bytes(width // 8, "big")

    return crc


_CHECKSUMS = {
    "CRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    # Pure Python, so about half a second per 5 MiB: only uploads that ask for these pay it.
    "CRC32C": _reflected_crc(0x82F63B78, 32),
    "CRC64NVME": _reflected_crc(0x9A6C9329AC4BC9B5, 64),
    "SHA1": lambda data: hashlib.sha1(data).digest(),
    "SHA256": lambda data: hashlib.sha256(data).digest(),
}


def _upload_algorithm(upload):
    algorithm = (upload.metadata.get("x-amz-checksum-algorithm") or "").upper()
    return algorithm if algorithm in _CHECKSUMS else None


def _part_checksum(part, algorithm):
    # S3 checks the checksum a client sends with UploadPart against the part's bytes, so the
    # checksum of the stored bytes is the one S3 keeps. Parts are never changed in place (a new
    # upload of a part number makes a new object), so the value can be kept on the part.
    checksums = part.__dict__.setdefault("fidelity_checksums", {})
    if algorithm not in checksums:
        checksums[algorithm] = base64.b64encode(_CHECKSUMS[algorithm](part.value)).decode()
    return checksums[algorithm]


class ChecksumMissingForPart(S3ClientError):
    code = 400

    def __init__(self, algorithm, part_number):
        super().__init__(
            "InvalidRequest",
            f"The upload was created using a {algorithm.lower()} checksum. The complete request"
            f" must include the checksum for each part. It was missing for part {part_number}"
            " in the request.",
        )


_complete_multipart_body = S3Response._complete_multipart_body


def complete_multipart_body(self, body):
    # "CompleteMultipartUpload" and its "CompletedPart" (Amazon S3 API Reference): a part's
    # ChecksumCRC32, ChecksumCRC32C, ChecksumCRC64NVME, ChecksumSHA1 or ChecksumSHA256 belongs to
    # an upload created with that algorithm. S3 answers InvalidRequest when an upload created
    # with an algorithm is completed without that checksum for some part, and InvalidPart (as
    # for a wrong ETag) when a part's checksum differs from the part's, or is of an algorithm the
    # upload was not created with, including any checksum for an upload created without one.
    # moto reads only each part's number and ETag.
    parts = list(_complete_multipart_body(self, body))  # moto's own checks (part order) first
    upload = self.backend.get_bucket(self.bucket_name).multiparts.get(self._get_param("uploadId"))
    if upload is None:
        yield from parts
        return
    given = []
    for element in minidom.parseString(body).getElementsByTagName("Part"):
        checksums = {}
        for name in _CHECKSUMS:
            nodes = element.getElementsByTagName("Checksum" + name)
            if nodes and nodes[0].firstChild is not None:
                checksums[name] = nodes[0].firstChild.wholeText.strip()
        given.append(checksums)
    algorithm = _upload_algorithm(upload)
    if algorithm is not None:
        for (number, _), checksums in zip(parts, given):
            if algorithm not in checksums:
                raise ChecksumMissingForPart(algorithm, number)
    for (number, etag), checksums in zip(parts, given):
        part = upload.parts.get(number)  # moto answers InvalidPart for a missing part
        if part is not None and any(
            name != algorithm or value != _part_checksum(part, name)
            for name, value in checksums.items()
        ):
            raise InvalidPart()
        yield number, etag


S3Response._complete_multipart_body = complete_multipart_body


# "Checking object integrity" (Amazon S3 User Guide, multipart uploads): the checksum of an
# object completed from parts of an upload created with an algorithm is a checksum of the
# parts' checksums, written with a dash and the number of parts; clients read that suffix as
# "not a checksum of the whole object" and do not check the bytes they read against it. moto
# leaves the suffix off, so an SDK that validates what it reads fails on every such object.
_complete_multipart_upload = S3Backend.complete_multipart_upload


def complete_multipart_upload(self, bucket_name, multipart_id, body):
    key = _complete_multipart_upload(self, bucket_name, multipart_id, body)
    if key is not None and key.checksum_value and "-" not in key.checksum_value:
        parts = key.etag.strip('"').rpartition("-")[2]
        key.checksum_value = f"{key.checksum_value}-{parts}"
    return key


S3Backend.complete_multipart_upload = complete_multipart_upload


# "ListParts" (Amazon S3 API Reference): the result names the upload's ChecksumAlgorithm and
# each part carries its checksum of that algorithm, so a client can rebuild the complete
# request from ListParts alone. moto lists only number, date, ETag and size. The backend's list
# of parts is handed to the template with the upload's algorithm on it.
class _Parts(list):
    checksum_algorithm = None


_list_parts = S3Backend.list_parts


def list_parts(self, bucket_name, multipart_id, *args, **kwargs):
    parts = _Parts(_list_parts(self, bucket_name, multipart_id, *args, **kwargs))
    algorithm = _upload_algorithm(self.get_bucket(bucket_name).multiparts[multipart_id])
    if algorithm is not None:
        parts.checksum_algorithm = algorithm
        for part in parts:
            _part_checksum(part, algorithm)
    return parts


S3Backend.list_parts = list_parts

_list_template = s3_responses.S3_MULTIPART_LIST_RESPONSE
for _old, _new in (
    (
        "<StorageClass>STANDARD</StorageClass>",
        "<StorageClass>STANDARD</StorageClass>\n"
        "  {% if parts.checksum_algorithm %}"
        "<ChecksumAlgorithm>{{ parts.checksum_algorithm }}</ChecksumAlgorithm>{% endif %}",
    ),
    (
        "<Size>{{ part.size }}</Size>",
        "<Size>{{ part.size }}</Size>\n"
        "    {% if parts.checksum_algorithm %}<Checksum{{ parts.checksum_algorithm }}>"
        "{{ part.fidelity_checksums[parts.checksum_algorithm] }}"
        "</Checksum{{ parts.checksum_algorithm }}>{% endif %}",
    ),
):
    if _list_template.count(_old) != 1:
        raise RuntimeError(f"moto's ListParts template changed: {_old!r} not found once")
    _list_template = _list_template.replace(_old, _new)
s3_responses.S3_MULTIPART_LIST_RESPONSE = _list_template

# "Amazon DynamoDB Transactions: How it works" (Isolation levels for DynamoDB transactions):
# a TransactWriteItems is all-or-nothing and serializable against every other write to its
# items, so of two conditional moves from one status only one applies. moto's server answers
# each request on its own thread and checks a transaction's conditions, writes its items and,
# on a failed condition, restores a copy of the whole table taken when it began, all without
# a lock: two racing moves can both apply, and a cancelled one can undo writes made meanwhile.
# One lock over the backend makes every DynamoDB call apply as if alone, which AWS's
# serializable isolation allows (it never cancels one here for a TransactionConflict).
_dynamodb = threading.RLock()


def _one_at_a_time(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with _dynamodb:
            return method(self, *args, **kwargs)

    return locked


for _name, _method in list(vars(DynamoDBBackend).items()):
    if inspect.isfunction(_method) and not _name.startswith("_"):
        setattr(DynamoDBBackend, _name, _one_at_a_time(_method))


# "TransactWriteItems" (Amazon DynamoDB API Reference, ClientRequestToken): a call with a token
# is idempotent for 10 minutes after the first such call completes. Repeating it with the same
# parameters succeeds again with no effect (nothing is written again and no condition is
# checked again); the same token with other parameters answers IdempotentParameterMismatch;
# after the 10 minutes the token is treated as new. moto ignores the token. "Parameters" is
# taken as the whole request but the token, as the page speaks of a change in other
# parameters. Only a call that succeeded is remembered: the page describes idempotency of the
# writes made, and says nothing of a cancelled or rejected call binding its token, so such a
# token can be tried again.
_TOKEN_LIFETIME = 600.0


class IdempotentParameterMismatchException(DynamodbException):
    error_type = ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException"

    def __init__(self):
        super().__init__(
            self.error_type,
            message="This ClientRequestToken was used within the last 10 minutes for a"
            " TransactWriteItems call with other parameters.",
        )


_transact_write_items = DynamoHandler.transact_write_items


def transact_write_items(self):
    token = self.body.get("ClientRequestToken")
    if token is None:
        return _transact_write_items(self)
    parameters = {name: value for name, value in self.body.items() if name != "ClientRequestToken"}
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()
    with _dynamodb:
        backend = self.dynamodb_backend
        tokens = backend.__dict__.setdefault("fidelity_transaction_tokens", {})
        now = time.monotonic()
        for old in [t for t, (_, _, at) in tokens.items() if now - at >= _TOKEN_LIFETIME]:
            del tokens[old]
        if token in tokens:
            remembered, response, _ = tokens[token]
            if remembered != digest:
                raise IdempotentParameterMismatchException()
            return response
        response = _transact_write_items(self)
        tokens[token] = (digest, response, time.monotonic())
        return response


DynamoHandler.transact_write_items = transact_write_items


# Not a difference from AWS: the harness's own view into moto. `/moto-api/data.json` dumps
# every instance of every model moto keeps, the audit log's events of every test among them,
# while a test reading the mail sent needs SES's alone: `?service=ses` narrows the dump to
# the services named, so it stays small and quick however many events the other tests write.
from moto.moto_api._internal.responses import MotoAPIResponse

_model_data = MotoAPIResponse.model_data


def model_data(self, request, full_url, headers):
    from urllib.parse import parse_qs, urlparse

    from moto.core.model_instances import model_data as models_by_service

    wanted = parse_qs(urlparse(full_url).query).get("service")
    if not wanted:
        return _model_data(self, request, full_url, headers)
    results = {}
    for service in sorted(s for s in models_by_service if s in wanted):
        results[service] = {}
        for name, model in sorted(models_by_service[service].items()):
            results[service][name] = []
            for instance in list(model.instances_tracked):
                fields = {}
                for attr in dir(instance):
                    if attr.startswith("_"):
                        continue
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except (TypeError, AttributeError, ValueError):
                        continue
                    fields[attr] = value
                results[service][name].append(fields)
    return 200, {"Content-Type": "application/javascript"}, json.dumps(results)


MotoAPIResponse.model_data = model_data

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
