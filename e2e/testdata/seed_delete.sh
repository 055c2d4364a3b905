# The seed guide's cancel snippet, as written; LOCATION and TOKEN come from
# the environment.
TOKEN="${ROUGHY_TOKEN:?}"
LOCATION="${ROUGHY_LOCATION:?}"
curl -X DELETE "$LOCATION" \
-H "Authorization: Bearer $TOKEN" \
-H "Tus-Resumable: 1.0.0"
