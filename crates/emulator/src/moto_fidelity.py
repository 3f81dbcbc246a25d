"""moto's server, with what it does differently from AWS's documentation put right.

Each fix names the page it follows. Run as `python moto_fidelity.py <moto.server arguments>`.
"""
import functools
import inspect
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend

_upload_part = S3Backend.upload_part


def upload_part(self, bucket_name, multipart_id, part_id, value):
    # "UploadPart" (Amazon S3 API Reference): an upload that was completed or aborted answers
    # NoSuchUpload, HTTP 404 ("The specified multipart upload does not exist"); moto fails
    # with a KeyError, HTTP 500.
    if multipart_id not in self.get_bucket(bucket_name).multiparts:
        raise NoSuchUpload(upload_id=multipart_id)
    return _upload_part(self, bucket_name, multipart_id, part_id, value)


S3Backend.upload_part = upload_part

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

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
