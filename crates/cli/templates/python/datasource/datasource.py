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


class {{class_prefix}}Datasource(OnlineDocumentDatasource):
    def _get_pages(self, datasource_parameters: dict[str, Any]) -> DatasourceGetPagesResponse:
        # List the documents of the connected workspace; this starting point returns one page.
        page = OnlineDocumentPage(
            page_id="welcome",
            page_name="Welcome",
            page_icon=None,
            type="page",
            last_edited_time="",
            parent_id=None,
        )
        workspace = OnlineDocumentInfo(
            workspace_id="default",
            workspace_name="{{plugin_name}}",
            workspace_icon="",
            total=1,
            pages=[page],
        )
        return DatasourceGetPagesResponse(result=[workspace])

    def _get_content(self, page: GetOnlineDocumentPageContentRequest) -> Generator[DatasourceMessage, None, None]:
        yield self.create_variable_message("workspace_id", page.workspace_id)
        yield self.create_variable_message("page_id", page.page_id)
        yield self.create_variable_message("content", f"Content of page {page.page_id}")
