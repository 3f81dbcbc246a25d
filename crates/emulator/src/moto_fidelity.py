"""moto's server, with what it does differently from AWS's documentation put right.

Each fix names the page it follows. Run as `python moto_fidelity.py <moto.server arguments>`.
"""
import sys

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

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
