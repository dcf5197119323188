"""What every HTTP app of stoker shares (the jobs API, the router): plain ASGI pieces any
app adds with one line, such as the request body limit (`stoker.web.body_limit`)."""
