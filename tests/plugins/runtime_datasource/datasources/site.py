from collections.abc import Generator, Mapping
from typing import Any

from dify_plugin.entities.datasource import WebsiteCrawlMessage, WebSiteInfo, WebSiteInfoDetail
from dify_plugin.interfaces.datasource.website import WebsiteCrawlDatasource


class SiteDatasource(WebsiteCrawlDatasource):
    """Crawls the `url` parameter: one progress message, then one page per path in `paths`."""

    def _get_website_crawl(self, datasource_parameters: Mapping[str, Any]) -> Generator[WebsiteCrawlMessage, None, None]:
        url = str(datasource_parameters.get("url") or "")
        paths = [p for p in str(datasource_parameters.get("paths") or "").split(",") if p]
        yield self.create_crawl_message(WebSiteInfo(status="processing", web_info_list=[], total=len(paths), completed=0))
        pages = [
            WebSiteInfoDetail(source_url=f"{url}/{p}", content=f"page {p}", title=p, description=f"{p} of {url}")
            for p in paths
        ]
        yield self.create_crawl_message(
            WebSiteInfo(status="completed", web_info_list=pages, total=len(paths), completed=len(paths))
        )
