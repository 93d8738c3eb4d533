from collections.abc import Generator
from typing import Any

from dify_plugin.entities.datasource import (
    DatasourceGetPagesResponse,
    DatasourceMessage,
    GetOnlineDocumentPageContentRequest,
    OnlineDocumentInfo,
    OnlineDocumentPage,
)
from dify_plugin.interfaces.datasource.online_document import OnlineDocumentDatasource


class PagesDatasource(OnlineDocumentDatasource):
    """Lists one page per name in the `names` parameter (comma-separated) of the workspace named by the
    `api_key` credential; a page's content names the page and its workspace."""

    def _get_pages(self, datasource_parameters: dict[str, Any]) -> DatasourceGetPagesResponse:
        names = [n for n in str(datasource_parameters.get("names") or "").split(",") if n]
        pages = [
            OnlineDocumentPage(
                page_id=f"id-{name}", page_name=name, page_icon=None, type="page", last_edited_time="", parent_id=None
            )
            for name in names
        ]
        workspace = str(self.runtime.credentials.get("api_key") or "none")
        info = OnlineDocumentInfo(
            workspace_id=workspace, workspace_name=workspace, workspace_icon="", total=len(pages), pages=pages
        )
        return DatasourceGetPagesResponse(result=[info])

    def _get_content(self, page: GetOnlineDocumentPageContentRequest) -> Generator[DatasourceMessage, None, None]:
        yield self.create_variable_message("page_id", page.page_id)
        yield self.create_variable_message("content", f"content of {page.page_id} in {page.workspace_id}")
