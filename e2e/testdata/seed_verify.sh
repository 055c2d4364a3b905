# The seed guide's verify request, as written; API, ASSET_ID and TOKEN come
# from the environment.
TOKEN="${ROUGHY_TOKEN:?}"
API="${ROUGHY_API:?}"
ASSET_ID="${ROUGHY_ASSET_ID:?}"
curl "$API/api/v1/assets/$ASSET_ID" \
-H "Authorization: Bearer $TOKEN"
