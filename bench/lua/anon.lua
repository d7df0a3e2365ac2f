-- GET /anon: no cookie.
wrk.method = "GET"
wrk.path = "/anon"
