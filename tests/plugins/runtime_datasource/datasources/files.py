from collections.abc import Generator

from dify_plugin.entities.datasource import (
    DatasourceMessage,
    OnlineDriveBrowseFilesRequest,
    OnlineDriveBrowseFilesResponse,
    OnlineDriveDownloadFileRequest,
    OnlineDriveFile,
    OnlineDriveFileBucket,
)
from dify_plugin.interfaces.datasource.online_drive import OnlineDriveDatasource


class FilesDatasource(OnlineDriveDatasource):
    """A drive whose listing has `max_keys` files under the requested prefix; a download names the file."""

    def _browse_files(self, request: OnlineDriveBrowseFilesRequest) -> OnlineDriveBrowseFilesResponse:
        prefix = request.prefix or ""
        files = [
            OnlineDriveFile(id=f"{prefix}file-{i}", name=f"file-{i}.txt", size=i * 10, type="file")
            for i in range(request.max_keys)
        ]
        bucket = OnlineDriveFileBucket(bucket=request.bucket, files=files, is_truncated=False, next_page_parameters=None)
        return OnlineDriveBrowseFilesResponse(result=[bucket])

    def _download_file(self, request: OnlineDriveDownloadFileRequest) -> Generator[DatasourceMessage, None, None]:
        yield self.create_variable_message("file_id", request.id)
        yield self.create_variable_message("bucket", request.bucket or "")
