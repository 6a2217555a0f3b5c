"""REST endpoints of a project's API clients (managers): list, create with a token, new token, remove."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services


@extend_schema_serializer(component_name="ApiClient")
class ApiClientOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="user_id", help_text="The client's user id.")
    username = serializers.CharField(source="user.username")
    active = serializers.BooleanField(source="user.is_active")
    managed = serializers.BooleanField(
        help_text="An account of this project alone: its managers issue its tokens and may remove it.")
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ApiClientToken")
class ApiClientTokenOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="user.pk")
    username = serializers.CharField(source="user.username")
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`. Shown this once.")


class ApiClientListApi(APIView):
    """The project's API clients (managers); POST creates one and answers its token, shown once."""

    @extend_schema_serializer(component_name="ApiClientCreate")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=40, help_text="Letters, digits, '.', '-', '_'; the account is "
                                                              "named name@project-slug.")

    @extend_schema(responses=ApiClientOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        return Response(ApiClientOutputSerializer(selectors.api_client_list(project), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ApiClientTokenOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user, key = services.api_client_create(project=project, name=data.validated_data["name"])
        body = ApiClientTokenOutputSerializer({"user": user, "token": key}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiClientTokenApi(APIView):
    """Give a client account of the project a new token (managers); the old one stops working at once."""

    @extend_schema(request=None, responses={200: ApiClientTokenOutputSerializer})
    def post(self, request: Request, project_id: int, client_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        client = selectors.api_client_get(project, client_id)
        key = services.api_client_token_issue(client=client)
        body = ApiClientTokenOutputSerializer({"user": client, "token": key}).data
        return Response(body, headers={"Cache-Control": "no-store"})


class ApiClientRemoveApi(APIView):
    """Remove a client account from the project (managers): its token is revoked, the account deactivated."""

    @extend_schema(responses={204: OpenApiResponse(description="Removed.")})
    def delete(self, request: Request, project_id: int, client_id: int) -> Response:
        project = selectors.project_get_for_user(request.user, project_id, min_role="manager")
        services.api_client_remove(project=project, client=selectors.api_client_get(project, client_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
